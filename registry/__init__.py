"""The camera registry: sites and cameras with owner, purpose, mode, retention, legal basis,
location, stream source, schedule, signage and mask plan."""
