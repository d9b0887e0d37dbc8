"""Client workloads (counter, wallet, probe) that drive a stack through its gates and record the history."""
