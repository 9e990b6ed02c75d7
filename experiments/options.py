"""Write the listing of every stage option (bitnet/training/options.py) into configs/default.py's comments.

    python -m experiments.options          # after adding or changing an Option; tests/test_options.py checks it is current
"""

import os

from absl import app

from bitnet.training import options

DEFAULT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "default.py")


def main(argv):
    del argv
    with open(DEFAULT) as file:
        text = file.read()
    updated = options.with_listings(text)
    if updated != text:
        with open(DEFAULT, "w") as file:
            file.write(updated)
    print(f"{'updated' if updated != text else 'already current'}: {DEFAULT}")


if __name__ == "__main__":
    app.run(main)
