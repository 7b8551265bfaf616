"""marshmallow schemas: the HTTP contract (request, response, errors) and the rule-file format."""
