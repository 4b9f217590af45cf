"""Running commands as jobs: process groups, streamed output, progress, cancel."""
