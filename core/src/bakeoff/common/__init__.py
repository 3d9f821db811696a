"""Plumbing every part uses: logs, YAML files, durations, cluster access, file locations."""
