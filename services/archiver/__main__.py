"""``python -m services.archiver``: wiring only."""

from services.archiver.app import main

if __name__ == "__main__":
    main()
