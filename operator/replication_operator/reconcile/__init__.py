"""Pure reconcile logic: desired state and observed state in, actions and status out."""
