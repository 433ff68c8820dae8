"""End-to-end benchmark (issues 4 and 6): fastnet beside slirp4netns and pasta through a TAP.
Run ``python -m bench.e2e.compare --help`` from the repository root, as root."""
