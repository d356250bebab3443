//! The pure reconcile planner.
