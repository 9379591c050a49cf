"""Adapters: one module per outside system. They know nothing of kopf or of the CRD models' wiring."""
