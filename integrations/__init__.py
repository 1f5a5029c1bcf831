"""Framework integrations, installed as ``colbert_adapters.integrations``.

Each integration module imports its framework lazily and raises
:class:`~colbert_adapters.errors.MissingDependencyError` naming the extra to install
(``pip install "colbert-adapters[langchain]"`` / ``"colbert-adapters[llamaindex]"``).
"""
