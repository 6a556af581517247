"""The situational picture (lägesbild): incidents per place and district over a period,
their rates per exposure hour, the ranking of places and the priority marks. Queries
(`queries`), charts (`charts`, server-side SVG for pages and the PDF report) and marks
(`marks`); the inbox's pages are `vaktpost.broker.inbox.lagesbild_pages`."""
