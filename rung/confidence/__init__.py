"""Answer confidence: signals read from a finished (or partly streamed) answer, and the calibrated
model that maps them to P(the answer is correct). Pure; imported by labelling and the gateway."""
