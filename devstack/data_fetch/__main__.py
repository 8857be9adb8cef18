"""``python -m devstack.data_fetch …``: the ``volstream data`` commands without the whole CLI
(what ``make run`` calls to locate the demo's data, quickly)."""

from devstack.data_fetch.cli import data_app

if __name__ == "__main__":
    data_app()
