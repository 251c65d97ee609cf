"""Synthetic people with exact 3D ground truth: motion capture (BVH), bodies, motion, the ray-cast
renderer and whole scenes in the MuCo-3DHP layout (:mod:`~mp3d_ros.synthetic.scenes`)."""
