"""Detection quality measured on labelled data: the pump testbed (SKAB) and simulated scenarios."""
