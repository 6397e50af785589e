"""FIDO2 touch-to-approve: enrolment, assertion ceremonies and assertion verification."""
