"""Case-study recipes (generation, representation, joint) and their baselines."""
