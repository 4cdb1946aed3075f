"""Classical localisation: back-projection of the dynamic channel onto a space's floor."""
