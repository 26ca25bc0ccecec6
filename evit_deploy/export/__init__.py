"""Export pipeline: profiles, transforms, exporters, validation."""
