"""The reference pipeline's demo: a survey generator, the science programs, and "advance".

* :mod:`remotebridge.demo.generate` writes a small real survey (FITS + pipeline rows).
* :mod:`remotebridge.demo.advance` defines downstream stage runs (cam, warp, stack).
* :mod:`remotebridge.demo.programs` holds the standalone science programs shipped to
  the remote compute nodes (numpy + astropy + stdlib only).
"""
