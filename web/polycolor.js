// polycolor: when Polycolor Train has written a model into models/polycolor/, re-read the node definitions so the
// Polycolor Model Loader's dropdown lists it (what the page's "Refresh" does), without the user pressing anything.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

app.registerExtension({
  name: "polycolor.refreshModels",
  setup() {
    api.addEventListener("polycolor.models_changed", () => app.refreshComboInNodes());
  },
});
