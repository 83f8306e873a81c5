"""Layer 10, notebooks: running the suite's notebooks, hosted platforms (Colab, ModelArts), bootstrap and offline release."""
