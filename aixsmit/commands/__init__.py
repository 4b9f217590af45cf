"""The non-interactive commands (``aixsmit cmd NAME …``): thin faces over the services."""
