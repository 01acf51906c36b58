"""Stand-in for NVIDIA NeMo (tests only): its presence is what "inside the NeMo container" means here."""
