"""The `eventpipeline.dev/v1alpha1` API: pydantic models, the single source of the CRD schemas."""
