"""The control service: desired state, migration phases, config push, rollback decisions."""
