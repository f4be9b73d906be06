"""Legal basis for camera surveillance: interest assessments, IMY permits, and the policy they
imply (`policy_for`)."""

from permits.policy import BasisFacts, CameraFacts, Policy, policy_for

__all__ = ["BasisFacts", "CameraFacts", "Policy", "policy_for"]
