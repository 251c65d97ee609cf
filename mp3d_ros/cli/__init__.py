"""Console scripts: one thin ``main()`` per command (arguments, progress, exit codes) over library
functions that the tests call directly."""
