"""remotebridge: run a survey pipeline's big batches on a remote supercomputer."""

__version__ = "0.1.0"
