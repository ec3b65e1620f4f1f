//! Rule-by-rule tests for pod and service validation, asserting on rendered messages.
