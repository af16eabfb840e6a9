"""The whole test session (tests/ and the API's doctests, and every command they start) gets
its own cloudseg home: a proof, model or run the developer keeps in ~/.cache/cloudseg must not
change what --precision auto or --model picks, and nothing a test does lands there. Proofs and
speeds are kept by the model file's SHA-256."""

import os
import tempfile

os.environ["CLOUDSEG_HOME"] = tempfile.mkdtemp(prefix="cloudseg-test-home-")
