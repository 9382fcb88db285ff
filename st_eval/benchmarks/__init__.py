"""Built-in judge benchmarks: RewardBench (official scoring) and MT-Bench human agreement."""
