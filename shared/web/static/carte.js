// The map of the search results (Leaflet, loaded before this module): one marker per result placed on the map,
// read from the result's data- attributes (no inline script). Without tiles the markers still show.
const element = document.getElementById("carte");
const L = window.L;

if (element && L) {
  const places = [...document.querySelectorAll("[data-lat][data-lon]")];
  if (places.length) {
    element.hidden = false;
    const map = L.map(element, { scrollWheelZoom: false });
    if (element.dataset.tiles) {
      L.tileLayer(element.dataset.tiles, { attribution: element.dataset.attribution, maxZoom: 18 }).addTo(map);
    }
    const points = places.map((place) => {
      const point = [Number(place.dataset.lat), Number(place.dataset.lon)];
      const link = place.querySelector("a");
      const marker = L.marker(point, { title: place.dataset.title, alt: place.dataset.title }).addTo(map);
      if (link) {
        const popup = document.createElement("a");
        popup.href = link.href;
        popup.textContent = place.dataset.title;
        marker.bindPopup(popup);
      }
      return point;
    });
    map.fitBounds(points, { padding: [32, 32], maxZoom: 12 });
  }
}
