"""``python -m vdgtool`` (also what ``torchrun -m vdgtool train ...`` runs)."""

from vdgtool.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
