import { chrome } from "./common.js";

chrome("index.html");
