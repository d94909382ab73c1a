"""Stage 2 (02_tokenize): the tokenizer and tokenized splits (tokens), how a long review is cut (truncation), views."""
