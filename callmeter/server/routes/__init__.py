"""The REST API's route modules, one per area; each exposes ``router``."""
