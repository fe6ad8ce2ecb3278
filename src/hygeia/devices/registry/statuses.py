"""The lifecycle statuses a Device and a DeviceMetric may take (R4 value sets
device-status and metric-operational-status), apart so the CLI's parser can offer
them without importing the registry's writes."""

from __future__ import annotations

# Device.status (FHIR R4 device-status, required binding)
DEVICE_STATUSES = ("active", "inactive", "entered-in-error", "unknown")
# DeviceMetric.operationalStatus (FHIR R4 metric-operational-status, required binding)
METRIC_STATUSES = ("on", "off", "standby", "entered-in-error")
