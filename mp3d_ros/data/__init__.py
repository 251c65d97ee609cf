"""Dataset readers (3DMPPE JSON, CMU Panoptic, COCO), geometry-consistent augmentation and the
lifter's training poses from motion capture."""
