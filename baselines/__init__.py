"""The baseline zoo (imported as ``cirbench.baselines``). ``zoo.py`` registers every model lazily."""
