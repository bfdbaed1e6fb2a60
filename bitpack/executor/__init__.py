"""The reference ternary CPU executor (NumPy)."""
