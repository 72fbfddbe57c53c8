"""Job states, the lifecycle that writes them, the runner and the dispatcher."""
