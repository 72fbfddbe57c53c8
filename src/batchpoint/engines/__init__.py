"""Engines run mini-batches on workers: ``LocalPoolEngine`` (processes on this machine)."""
