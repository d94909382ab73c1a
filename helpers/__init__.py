"""Fine-tune BERT on IMDB sentiment, evaluate it, and distil it into DistilBERT.

The notebooks in `notebooks/` are thin callers of this package; every behaviour lives here.
"""

__version__ = "0.1.0"
