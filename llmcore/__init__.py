"""The shared core: what the router and the control service both need and neither owns.

The vocabulary (providers, tasks), the model catalogue's defaults, telemetry set-up. It imports
neither service; both import it (the layers are enforced by import-linter contracts).
"""
