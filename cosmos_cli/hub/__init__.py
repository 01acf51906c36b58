"""Fetching checkpoints from the Hugging Face Hub: what to fetch (``manifest``), how (``download``), and
what each hub failure means to the user (``errors``). Built on huggingface_hub; nothing here prints."""
