"""One module (or package) per CLI command, built on the engine and the libraries; ``api`` behind ``ganforge.load``."""
