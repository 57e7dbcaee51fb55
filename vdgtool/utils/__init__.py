"""Small shared helpers: provenance, seeding, logging, progress, environment."""
