"""Camera clip simulator: a facade seen from below, objects falling under gravity, distractors."""
