"""The control plane: accounts, users, labels, segments and campaigns in SQLAlchemy, with
their audit log and the change feed to the `campaigns` topic.

Modules are used directly (`control.campaigns`, `control.labels`…); this package exports
only the store.
"""

from control.db import ControlStore

__all__ = ["ControlStore"]
