"""Benchmarks and the storms they run: synthetic storms on real service graphs, the demo storm."""
