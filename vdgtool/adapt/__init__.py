"""Pieces of domain adaptation that are not training objectives: pseudo-label selection policies
(``selection``), memory banks of target samples, ..."""
