"""What the `opto` commands read, parse and say, apart from the command line itself (`optodsl.cli`),
which stays the only place that prints errors and picks exit codes: the small option parsers
(`options`), the `opto runs` listing (`runs`), the `opto explain` text (`explain_text`) and the
start-up of several processes (`distributed`). Each returns values or text, or raises."""
