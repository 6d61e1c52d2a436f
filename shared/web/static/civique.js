// Civique's script on every page. The pages work without it: it marks that JavaScript runs, so that what only a
// browser without it needs (a link to look again at a request being carried out) is hidden; htmx does the rest.
document.documentElement.classList.add("civique-js");
