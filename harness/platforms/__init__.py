"""Where stacks run: the contract (base, operations) and its implementations (local, kubernetes)."""
